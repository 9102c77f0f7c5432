"""Testing aids shipped with saslkit: an in-memory exchange (:mod:`saslkit.testing.loopback`) and the
test-vector runner (:mod:`saslkit.testing.vectors`)."""
