"""Transfer policy: how fast, how many at once, what happens on a conflict, what to fetch.

Each module has one job and no I/O of its own beyond what it is handed (providers, a
store), so the engine stays the one place that runs transfers:

* :mod:`app.policy.bandwidth` - rclone-style ``bwlimit`` values and weekly timetables,
  token buckets shared by every worker of a site and direction, throttled readers;
* :mod:`app.policy.concurrency` - live-adjustable transfer slots per site and direction;
* :mod:`app.policy.conflict` - what to do when the target already holds a different
  file under the published path (``this`` / ``other`` / ``newer`` / ``fail``);
* :mod:`app.policy.staging` - "when complete" downloads: staged names, moved in together;
* :mod:`app.policy.subscriptions` - rules that add this machine's site to new publishes;
* :mod:`app.policy.adopt` - ``sitesync validate``: adopt copies already on a site.
"""
