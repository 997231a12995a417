"""Stand-ins for programs that only exist on a Nitro instance, for tests."""
