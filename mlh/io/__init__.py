"""Reading and summarising data from outside the record schema: GEARS H training snapshots and
summaries of folders of records."""
