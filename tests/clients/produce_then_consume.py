"""Produce with one client, or consume with another, for the restart test.
Usage: produce_then_consume.py produce BOOTSTRAP TOPIC N | consume BOOTSTRAP TOPIC N"""
import sys
from common import expect, ok

mode, bootstrap, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "produce":
    from confluent_kafka import Producer
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, key=str(i % 7), value=f"restart-{i}", on_delivery=lambda e, m: errors.append(e) if e else None)
    expect(p.flush(30) == 0 and not errors, f"produce failed: {errors[:3]}")
    ok(produced=n)
else:
    from kafka import KafkaConsumer
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="after-restart", auto_offset_reset="earliest",
                      consumer_timeout_ms=10000)
    got = sorted(int(m.value.decode().split("-")[1]) for m in c)
    c.close()
    expect(got == list(range(n)), f"after restart got {len(got)} records, want {n} distinct")
    ok(consumed=len(got))
