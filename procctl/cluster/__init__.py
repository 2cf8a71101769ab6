"""Beyond one machine: `each` jobs on a Dask cluster (`executor`, `worker`)
and a cluster of this machine for trying it (`local`).

Importing this package imports nothing of Dask; its modules do, and only
when a run uses the cluster (`pip install procctl[dask]`).
"""
