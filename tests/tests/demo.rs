//! `sluice demo`, the README's run command, end to end on a small scale: the log part and
//! the Kappa loop (views bootstrapped from history, served, rebuilt under live traffic and
//! compared with a recomputation).

use sluice_tests::sluice_cli;

#[test]
fn demo_runs_the_whole_loop() {
    let (status, out, err) = sluice_cli(&["demo", "--records", "20000", "--ticks", "50000"], None);
    assert!(status.success(), "demo failed:\n{out}\n{err}");
    for want in [
        "read back all 20000 records, every one checked",
        "after restart: read back all 20000 records",
        "bootstrapped from history",
        "psql -h 127.0.0.1 -p ",
        "kcat -b 127.0.0.1:",
        "per_symbol: version 2 serves",
        "equal to a recomputation from the generator: yes",
    ] {
        assert!(out.contains(want), "demo output lacks {want:?}:\n{out}\n{err}");
    }
}
