"""Development harness: starts the real services (broker, PostgreSQL) that the
tests and the demo need, on free loopback ports, and stops them cleanly.

Nothing here ships to a gateway or to production; it is the glue the README's
two commands stand on. It may import any project package because it only
starts them as separate processes.
"""
