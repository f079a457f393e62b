"""augkit.cli: the ``augkit`` command line (click), thin over augkit and augkit.train."""
