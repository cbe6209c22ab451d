pub fn run(_s: &std::path::Path) -> Result<(), sandbox_net::Error> { Ok(()) }
