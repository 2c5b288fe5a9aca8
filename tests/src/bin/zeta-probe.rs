//! `zeta-probe SOCKET`: one GetStatus call over the socket; exit 0 when answered, 1 otherwise.
//! The tests run it under another uid to check that the daemon refuses other users.
#![allow(clippy::print_stdout)]

use zeta_proto::v1;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let socket = std::env::args().nth(1).expect("usage: zeta-probe SOCKET");
    let result = async {
        let ch =
            zeta_proto::socket::connect(std::path::Path::new(&socket)).await.map_err(|e| format!("connect: {e:?}"))?;
        v1::daemon_client::DaemonClient::new(ch)
            .get_status(v1::GetStatusRequest {})
            .await
            .map_err(|e| format!("call: {e}"))
    }
    .await;
    match result {
        Ok(_) => println!("answered"),
        Err(e) => {
            println!("refused: {e}");
            std::process::exit(1);
        }
    }
}
