//! Writes every target's seed corpus under DIR/<target>/ (for `cargo afl fuzz -i DIR/<target>`).

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: seeds DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    for (name, _) in cardwire_fuzz::targets::ALL {
        let out = dir.join(name);
        std::fs::create_dir_all(&out).expect("a folder for the seeds");
        let seeds = cardwire_fuzz::seeds::for_target(name);
        for (file, bytes) in &seeds {
            std::fs::write(out.join(file), bytes).expect("a seed written");
        }
        println!("{name}: {} seeds in {}", seeds.len(), out.display());
    }
}
