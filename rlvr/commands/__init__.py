"""Sub-command modules for ``rlvr`` (see rlvr.cli)."""
