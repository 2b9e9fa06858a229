"""`make chaos`: a long, seeded, reproducible run of the whole pipeline under faults, then the invariants.

- plan.py: the seeded plan (receipts, segments, fault schedule);
- world.py: the local stack in this process, with the hooks for faults the admin APIs do not offer;
- worker.py: the drainer and the sweep as child processes (SIGKILLed at random points);
- runner.py: runs the plan, prints progress, checks the invariants, prints the summary;
- invariants.py: the invariants over plain data, with a diff for each violation.
"""
