"""Reference solutions, one module per assignment; the contract is SPEC.md."""
