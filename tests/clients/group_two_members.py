"""A consumer group of two members over the partitions of TOPIC: member A starts alone, B
joins mid-stream while a producer keeps producing. Both commit what they processed
(synchronously, and on every revocation). Checks that every record is delivered, none
twice, and that the group's committed offsets reach the end.
Usage: group_two_members.py BOOTSTRAP TOPIC PARTITIONS N GROUP"""
import sys
import threading
import time

T0 = time.time()


def log(msg):
    print(f"{time.time() - T0:6.2f} {msg}", file=sys.stderr, flush=True)
from confluent_kafka import Producer, Consumer, TopicPartition
from common import expect, fail, ok

bootstrap, topic, parts, n, group = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lock = threading.Lock()
delivered = {}        # value -> (member, partition, offset)
dupes = []
stop = threading.Event()
errors = []


def member(name, start_delay):
    time.sleep(start_delay)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    state = {"since_commit": 0}

    def on_assign(cons, partitions):
        log(f"{name} assigned {[p.partition for p in partitions]}")

    def on_revoke(cons, partitions):
        log(f"{name} revoked {[p.partition for p in partitions]}")
        # Commit what was processed before the partitions move to the other member.
        try:
            cons.commit(asynchronous=False)
        except Exception as e:  # nothing to commit yet
            if "NO_OFFSET" not in str(e):
                errors.append(f"{name} commit on revoke: {e}")

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not stop.is_set():
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            errors.append(f"{name}: {m.error()}")
            continue
        v = m.value().decode()
        with lock:
            if v in delivered:
                dupes.append((v, delivered[v], (name, m.partition(), m.offset())))
            delivered[v] = (name, m.partition(), m.offset())
        state["since_commit"] += 1
        if state["since_commit"] >= 20:
            c.commit(message=m, asynchronous=False)
            state["since_commit"] = 0
    try:
        c.commit(asynchronous=False)
    except Exception:
        pass
    c.close()


def produce():
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    for i in range(n):
        p.produce(topic, key=f"k{i}", value=f"r{i}")
        if i % 100 == 99:
            p.flush(10)
            time.sleep(0.2)
    expect(p.flush(30) == 0, "producer did not flush")


threads = [threading.Thread(target=member, args=("A", 0)), threading.Thread(target=member, args=("B", 2.5))]
for t in threads:
    t.start()
produce()
deadline = time.time() + 60
while time.time() < deadline:
    with lock:
        if len(delivered) >= n:
            break
    time.sleep(0.2)
time.sleep(1.0)
stop.set()
for t in threads:
    t.join()
if errors:
    fail(f"errors: {errors[:5]}")
expect(len(delivered) == n, f"delivered {len(delivered)} of {n}")
expect(not dupes, f"{len(dupes)} records delivered twice after commit, e.g. {dupes[:3]}")
members = {m for (m, _, _) in delivered.values()}
expect(members == {"A", "B"}, f"records went to {members}: B never got a share")
# The committed offsets reach each partition's end.
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
committed = c.committed([TopicPartition(topic, q) for q in range(parts)], timeout=10)
ends = [c.get_watermark_offsets(TopicPartition(topic, q), timeout=10)[1] for q in range(parts)]
c.close()
for tp, end in zip(committed, ends):
    expect(tp.offset == end, f"partition {tp.partition}: committed {tp.offset}, end {end}")
ok(delivered=len(delivered), by_member={m: sum(1 for x in delivered.values() if x[0] == m) for m in members})
