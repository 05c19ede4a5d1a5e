"""The output root's integrity: files written atomically (atomic), one writer at a time
(lock), a complete output told from a damaged one (outputs), the manifest a job writes
last (manifest), and the incremental root's runs and their index (incremental)."""
