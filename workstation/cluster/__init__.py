"""The cluster path: score a corpus too big for a laptop on Ray Data, and
bring the results home into a workspace.

* ``bundle``: the signed scoring bundle (the oracle bundle plus the encoder,
  every file's sha256 and a signature), made from a workspace, verified
  anywhere without one;
* ``inputs``: reading TRL / labels / HH-RLHF files with the importers' own
  record rules, one output row per record (bad records counted, not fatal);
* ``scorer``: one onnxruntime session (and the encoder) scoring Arrow batches;
* ``results``: the results folder (Parquet shards and the ``_SUCCESS``
  manifest) and the checks and metrics over all of its rows;
* ``ray_run``: ``scale run`` on Ray Data; the only module that imports ray;
* ``homecoming``: ``scale import``, the results as an audit run in a workspace.

Only ``ray_run`` needs the ``cluster`` extra (``ray[data]``); making a bundle
and importing results work on a laptop without it.
"""
