"""Testing aids shipped with saslkit: the test-vector runner (:mod:`saslkit.testing.vectors`)."""
