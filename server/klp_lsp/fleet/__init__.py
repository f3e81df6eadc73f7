"""One patch checked against many kernel builds: the fleet file, the run on Dask, the reports.

`spec` reads FLEET.toml (or a directory or glob of corpus kernels), `plan` turns it into index
jobs keyed by build-id, `tasks` holds what runs on a worker, `engine` is the only module that
imports Dask, `compare` finds where kernels disagree, and `render` prints tables, JSON and HTML.
"""
