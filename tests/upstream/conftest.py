"""The peer test suites in this folder run unchanged against this toolkit's primitives (see
each file's header). Cases that fail for a reason outside this toolkit are listed here, with
the reason, as strict expected failures: if they start to pass, the run says so."""

import pytest

SPARSE_COO = ("fails with qiskit-machine-learning's own QMLSampler too: with sparse 0.19, "
              "np.max of a COO array is a COO scalar that assertAlmostEqual cannot round "
              "(fixed upstream after 0.9 by casting, qiskit-machine-learning PR #1050)")

EXPECTED_FAILURES = {
    "test_sampler_qnn.py::TestSamplerQNN::test_sampler_qnn_gradient_1__True__0__2_": SPARSE_COO,
    "test_sampler_qnn.py::TestSamplerQNN::test_sampler_qnn_gradient_2__True__1__2_": SPARSE_COO,
    "test_sampler_qnn.py::TestSamplerQNN::test_sampler_qnn_gradient_3__True__2__2_": SPARSE_COO,
}


def pytest_collection_modifyitems(items):
    for item in items:
        for suffix, reason in EXPECTED_FAILURES.items():
            if item.nodeid.endswith(suffix):
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
