"""The throwaway servers that `make test` starts are real and isolated."""

import asyncpg
import redis.asyncio as aioredis


async def test_postgres_database_is_fresh(pg_dsn):
    conn = await asyncpg.connect(pg_dsn)
    try:
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables == 0
        assert not pg_dsn.endswith(":5432/postgres")
    finally:
        await conn.close()


async def test_redis_is_flushed(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.dbsize() == 0
        assert ":6379/" not in redis_url
    finally:
        await client.aclose()
