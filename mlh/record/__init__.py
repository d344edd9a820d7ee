"""The Hamiltonian-record schema: basis descriptions, H(R)/S(R) blocks, NetCDF I/O, and exact
real-space blocks from Bloch matrices. Everything that crosses a package boundary is a record."""
