//! `liberactl`, the operators' client of liberad's admin socket. All of it
//! lives in [`liberad::ctl`].

fn main() -> std::process::ExitCode {
    liberad::ctl::main()
}
