fn main() {
    eprintln!("corestream: not built yet");
    std::process::exit(2);
}
