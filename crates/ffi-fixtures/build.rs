//! Compiles the C fixtures. Stack-clash protection is turned off explicitly so that the 64 KiB
//! frame is entered without probes, as Debian's gcc does by default (the point of the test).

fn main() {
    println!("cargo:rerun-if-changed=c/fixtures.c");
    cc::Build::new()
        .file("c/fixtures.c")
        .opt_level(2)
        .flag_if_supported("-fno-stack-clash-protection")
        .flag_if_supported("-fno-stack-protector")
        .flag_if_supported("-fasynchronous-unwind-tables")
        .compile("pagurus_ffi_fixtures");
}
