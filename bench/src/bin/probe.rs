use std::time::Instant;
fn main() {
    for (pin, dsync) in [(true, false), (false, false), (true, true), (false, true), (true, false), (false, false)] {
        let path = std::path::PathBuf::from(format!("/work/main/target/probe-{pin}-{dsync}"));
        let _ = std::fs::remove_file(&path);
        let placement = if pin { glommio::Placement::Fixed(0) } else { glommio::Placement::Unbound };
        let h = glommio::LocalExecutorBuilder::new(placement)
            .spawn(move || async move {
                std::fs::write("/work/main/target/probe-x", [0u8; 4096]).unwrap();
                let _ = glommio::io::DmaFile::open("/work/main/target/probe-x").await.unwrap();
                let mut o = glommio::io::OpenOptions::new();
                o.read(true).write(true).create(true);
                if dsync {
                    o.custom_flags(libc::O_DSYNC);
                }
                let f = o.dma_open(&path).await.unwrap();
                let mut h = bench::latency_histogram();
                for i in 0..1000u64 {
                    let mut b = f.alloc_dma_buffer(4096);
                    b.as_bytes_mut().fill(7);
                    let t = Instant::now();
                    f.write_at(b, i * 4096).await.unwrap();
                    if !dsync {
                        f.fdatasync().await.unwrap();
                    }
                    h.record(t.elapsed().as_micros() as u64).unwrap();
                }
                h
            })
            .unwrap()
            .join()
            .unwrap();
        println!("pin={pin} dsync={dsync}: {}", bench::describe(&h));
    }
    let h =
        bench::raw_disk::write_fdatasync_latency_us(std::path::Path::new("/work/main/target/probe-raw"), 1000).unwrap();
    println!("raw: {}", bench::describe(&h));
}
