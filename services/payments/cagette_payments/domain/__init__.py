"""Pure domain of the payments service: no I/O, unit-tested on its own."""
