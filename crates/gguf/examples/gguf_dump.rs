fn main() {
    let path = std::env::args().nth(1).expect("path");
    let g = smolt_gguf::Gguf::open(&path).unwrap();
    for (k, v) in g.metadata() {
        println!("{k} = {v}");
    }
    for t in g.tensors() {
        println!("{} {:?} {} {}", t.name, t.dims, t.ty, t.offset);
    }
}
