import sqlite3

import anyio

import poolkit


async def main() -> None:
    async with poolkit.Pool(sqlite3, "quickstart.db", max_size=4) as pool:
        async with pool.transaction() as conn:  # commits on success, rolls back on error
            await conn.execute("CREATE TABLE IF NOT EXISTS hits (path TEXT)")
            await conn.execute("INSERT INTO hits VALUES (?)", ("/",))
        async with pool.connection(timeout=2.0) as conn:
            cur = await conn.execute("SELECT count(*) FROM hits")
            row = await cur.fetchone()  # None when no rows are left
            assert row is not None
            print("hits:", row[0], pool.stats().acquired, "checkouts")


anyio.run(main)
