"""Round trip through kafka-python: keys, headers, timestamps; seek by offset and by time.
Usage: roundtrip_kafka_python.py BOOTSTRAP TOPIC PARTITIONS N"""
import sys
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
from common import expect, ok

bootstrap, topic, parts, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base_ts = 1_710_000_000_000
prod = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", acks="all", linger_ms=5)
futures = [prod.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % parts,
                     timestamp_ms=base_ts + i, headers=[("idx", str(i).encode())]) for i in range(n)]
prod.flush()
offsets = {}
for i, f in enumerate(futures):
    md = f.get(timeout=30)
    offsets[i] = md.offset
prod.close()

cons = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
tps = [TopicPartition(topic, q) for q in range(parts)]
cons.assign(tps)
cons.seek_to_beginning(*tps)
seen = set()
for m in cons:
    i = int(dict(m.headers)["idx"])
    expect(m.key == f"k{i}".encode() and m.value == f"v{i}".encode(), f"content of {i}")
    expect(m.timestamp == base_ts + i, f"timestamp of {i}: {m.timestamp}")
    expect(m.offset == offsets[i], f"offset of {i}")
    expect(i not in seen, f"record {i} twice")
    seen.add(i)
    if len(seen) == n:
        break
expect(len(seen) == n, f"consumed {len(seen)} of {n}")
i = n - 5
found = cons.offsets_for_times({TopicPartition(topic, i % parts): base_ts + i})
expect(found[TopicPartition(topic, i % parts)].offset == offsets[i], f"offsets_for_times {found}")
cons.seek(TopicPartition(topic, 1), 3)
m = next(iter(cons))
expect(m.partition == 1 and m.offset == 3, f"seek to offset 3 of partition 1: {m.partition}/{m.offset}")
cons.close()
ok(consumed=len(seen))
