use std::net::TcpStream;
use std::time::{Duration, Instant};

use casesync_aws::testing::{Moto, MotoServer};

#[tokio::test]
async fn a_dedicated_moto_server_answers_and_stops_when_dropped() {
    // Given a moto server of our own
    let server = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    let url = server.url().to_owned();
    let addr = url.trim_start_matches("http://").to_owned();

    // Then the SDK talks to it
    let aws = Moto::connect(&url).await;
    let names = aws.unique_names("fixture");
    casesync_aws::create_tables(&aws.dynamodb(), &names.tables)
        .await
        .unwrap();
    let tables = aws.dynamodb().list_tables().send().await.unwrap();
    assert!(tables.table_names().contains(&names.tables.connections));

    // When it is dropped, then it stops listening
    drop(aws);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_ok() {
        assert!(Instant::now() < deadline, "moto still listens on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn unique_names_do_not_collide_and_the_queue_name_is_fifo() {
    let aws = casesync_aws::testing::moto().await;
    let (a, b) = (aws.unique_names("t1"), aws.unique_names("t1"));
    assert_ne!(a, b);
    assert!(a.queue.ends_with(".fifo"));
    assert!(a.tables.connections.starts_with("t1-"));
}
