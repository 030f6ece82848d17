"""Stand-in for qiskit-machine-learning's ``test.QiskitMachineLearningTestCase`` (its test
suite's base class), so its QNN tests run here unchanged apart from the primitives under test:
the same warning filter and timing, without the log-file set-up."""

import time
import unittest
import warnings


class QiskitMachineLearningTestCase(unittest.TestCase):
    """Base class of the vendored qiskit-machine-learning tests."""

    def setUp(self) -> None:
        warnings.filterwarnings("default", category=DeprecationWarning)
        self._started_at = time.time()
