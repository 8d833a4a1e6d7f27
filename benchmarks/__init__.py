"""poolkit's benchmarks (issue 6): poolkit beside the native async pools, on real servers.

``python -m benchmarks`` (or ``nox -s bench``) runs every contender of :mod:`.contenders` side
by side on the local PostgreSQL and MariaDB, the pool-only cycles of :mod:`.cycles`, and writes
RESULTS.md, plots and the raw samples. One job per module: :mod:`.dsn` (where the servers are),
:mod:`.measure` (the timed region), :mod:`.runs` (the plan and one run), :mod:`.sysinfo`
(``/proc``), :mod:`.samples` (the JSON), :mod:`.summary`, :mod:`.verdicts`, :mod:`.report` and
:mod:`.plots` (the output), :mod:`.run` (the command line).

The ``pgbouncer`` workload runs many processes instead of one: :mod:`.pgbouncer` (the case:
K processes x a pool of M each, straight to PostgreSQL and through PgBouncer), :mod:`.fleet`
(the worker processes), :mod:`.sessions` (server sessions and PgBouncer clients, sampled) and
:mod:`.pgbouncer_report` (its tables).

The ``restart`` workload runs poolkit, psycopg_pool and asyncpg through a server restart, a
crash and a freeze: :mod:`.restart` (the plan, each run in a process of its own),
:mod:`.restart_scenarios` (what happens in that process), :mod:`.restart_samples` (settings,
samples, the JSON), :mod:`.cluster` (the private PostgreSQL cluster they happen to) and
:mod:`.restart_report` (its table).
"""
