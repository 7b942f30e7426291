"""Evaluation: pass@k / maj@k harness (``rlvr eval``) and run reports (``rlvr report``)."""
