fn main() {
    println!("smolt");
}
