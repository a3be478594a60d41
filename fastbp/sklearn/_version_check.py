"""The oldest scikit-learn these estimators are written for (``validate_data``, ``__sklearn_tags__``)."""

MINIMUM = (1, 6)


def check_sklearn_version(version: str) -> None:
    """ImportError, with the fix, when ``version`` is older than :data:`MINIMUM`."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    if tuple(parts) < MINIMUM:
        raise ImportError(f"fastbp.sklearn needs scikit-learn >= {'.'.join(map(str, MINIMUM))}; this is "
                          f"{version}: pip install -U 'scikit-learn>={'.'.join(map(str, MINIMUM))}'")
