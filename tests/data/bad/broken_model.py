"""An audit SPEC module that does not import: `paramaudit audit broken_model:build` exits 2."""

import package_that_does_not_exist  # noqa: F401


def build():  # pragma: no cover - never reached
    raise AssertionError("unreachable")
