//! `LISTEN` on a connection of its own: every commit that queues deliveries anywhere on the
//! database (`NOTIFY`) wakes this process's workers. Reconnects when the connection is lost;
//! workers also poll slowly, so a notification missed meanwhile only delays.

use super::tls::Tls;
use futures_util::{stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, NoTls, Socket};
use tracing::{debug, warn};

/// The listening task; it ends with the store.
pub struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    pub fn start(config: tokio_postgres::Config, tls: Tls, channel: &'static str, queued: Arc<Notify>) -> Listener {
        let task = tokio::spawn(async move {
            loop {
                let done = match &tls {
                    Tls::Off => listen(&config, NoTls, channel, &queued).await,
                    Tls::On(connect) => listen(&config, connect.clone(), channel, &queued).await,
                };
                if let Err(e) = done {
                    warn!(error = %e, "listening for queued deliveries stopped; reconnecting");
                }
                // Whatever was queued while not listening is found by the workers' poll; wake
                // them once anyway.
                queued.notify_one();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Listener { task }
    }
}

async fn listen<T>(
    config: &tokio_postgres::Config,
    tls: T,
    channel: &str,
    queued: &Notify,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
    // The client must live as long as the connection is read: dropping it closes it.
    let statement = format!("listen {channel}");
    let listening = client.batch_execute(&statement);
    tokio::pin!(listening);
    // Drive the connection while LISTEN is sent, then keep reading its messages.
    loop {
        tokio::select! {
            done = &mut listening => { done?; break; }
            m = messages.next() => match m {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
    debug!(channel, "listening for queued deliveries");
    while let Some(m) = messages.next().await {
        if let AsyncMessage::Notification(_) = m? {
            queued.notify_one();
        }
    }
    Ok(())
}
