"""Studies built on the ptycho package (SPEC §6). ``ptycho.studies.dose``: the dose-response study (a package)."""
