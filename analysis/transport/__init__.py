"""Two-terminal quantum transport from Hamiltonian records: T(E) and the Landauer-Büttiker current."""
