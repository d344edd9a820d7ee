"""Reading and summarising data from outside the record schema: GEARS H training snapshots,
summaries of folders of records, and records <-> sisl Hamiltonians (TBtrans .TSHS files)."""
