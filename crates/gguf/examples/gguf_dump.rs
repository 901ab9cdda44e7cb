//! Print what `smolt inspect` shows: `cargo run -p smolt-gguf --example gguf_dump -- FILE`.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: gguf_dump FILE.gguf");
        std::process::exit(2);
    };
    match smolt_gguf::Gguf::open(&path) {
        Ok(g) => print!("{}", g.summary()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
