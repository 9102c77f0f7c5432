"""Test-vector runner: replay SCRAM, PLAIN, LOGIN, SASLprep, HT, REMEMBERME and STOKEN vectors through saslkit.

The file formats are documented in ``vectors/README.md``; :func:`shipped_vectors` is the directory of
saslkit's own files (packaged in the wheel); one module per vector
kind checks it (:mod:`.scram`, :mod:`.plain`, :mod:`.login`, :mod:`.saslprep`, :mod:`.ht`,
:mod:`.rememberme`, :mod:`.stoken`), each through ``check(vector) -> (ok, detail)``.
A malformed file or vector never raises: it yields a failing
:class:`VectorResult` whose ``detail`` says what is wrong.
"""

from ._common import VectorResult
from ._runner import check_file, check_files, shipped_vectors, summarize

__all__ = ["VectorResult", "check_file", "check_files", "shipped_vectors", "summarize"]
