"""The error type of the ``verifiers`` package (it depends on nothing else in the project)."""
from __future__ import annotations


class VerifierError(ValueError):
    """A verifier cannot be used: unknown name, a spec that does not import, a wrong signature, a
    non-number reward, a bad input file. The message is one line and names the verifier or file."""
