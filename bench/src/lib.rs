pub mod raw_disk;
