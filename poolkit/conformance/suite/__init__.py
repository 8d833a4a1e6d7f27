"""The conformance checks. Run them with ``pytest --pool-conformance``.

Every check takes the ``pool_case`` fixture (one backend x driver x pool adapter), gets the
database through ``target`` and opens pools with ``adapter.pool(target, ...)``. To run them
from your own tests directory, import them into a test module
(``from poolkit.conformance.suite.test_pep249 import *``) and pass ``--pool-conformance``.
"""

from poolkit._optional import require

require("pytest", "the conformance checks run under pytest")
