"""Stand-in for Qiskit's ``test.QiskitTestCase`` (its test suite's base class), so Qiskit's own
primitive tests run here unchanged apart from the class under test. It keeps what those tests
use: a plain ``unittest.TestCase``."""

import unittest


class QiskitTestCase(unittest.TestCase):
    """Base class of the vendored Qiskit tests."""
