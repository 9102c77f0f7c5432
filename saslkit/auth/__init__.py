"""Authentication engines: one sans-IO SASL exchange per side, under every protocol binding."""
