package blockdrive.minidfs;

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.MiniDFSCluster.DataNodeProperties;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.FSNamesystem;
import org.apache.hadoop.util.VersionInfo;

/**
 * Starts an in-process HDFS (Apache Hadoop's MiniDFSCluster) for blockdrive's
 * integration tests: one NameNode (RPC + HTTP/WebHDFS) and N DataNodes, all
 * bound to 127.0.0.1, permissions off, then creates a world-writable test
 * directory, prints "MINIDFS READY" and runs until killed.
 *
 * Options (all optional):
 *   --base DIR          data directory (default ./var/services/hdfs)
 *   --nn-port P         NameNode RPC port (default 9000)
 *   --http-port P       NameNode HTTP / WebHDFS port (default 9870)
 *   --datanodes N       number of DataNodes (default 2)
 *   --replication R     dfs.replication (default 2)
 *   --dir PATH          directory to create, mode 777 (default /blockdrive-test)
 *   --format            always format (wipe) the namespace; by default an
 *                       existing, formatted data directory is reused
 *   --control-port P    also answer a line protocol on 127.0.0.1:P that stops
 *                       and restarts DataNodes (see {@link Control}); without
 *                       it nothing but the cluster listens
 *   -Dkey=value         any extra Hadoop configuration
 */
public final class Launcher {

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable t) {
            // Exit (rather than linger on non-daemon threads) so that
            // scripts/services.sh sees the failure at once.
            System.err.println("MINIDFS FAILED: " + t);
            t.printStackTrace();
            System.err.flush();
            Runtime.getRuntime().halt(1);
        }
    }

    private static void run(String[] args) throws Exception {
        String base = "var/services/hdfs";
        int nnPort = 9000;
        int httpPort = 9870;
        int dataNodes = 2;
        int replication = 2;
        String dir = "/blockdrive-test";
        boolean forceFormat = false;
        int controlPort = 0;
        Configuration conf = new HdfsConfiguration();

        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--base": base = args[++i]; break;
                case "--nn-port": nnPort = Integer.parseInt(args[++i]); break;
                case "--http-port": httpPort = Integer.parseInt(args[++i]); break;
                case "--datanodes": dataNodes = Integer.parseInt(args[++i]); break;
                case "--replication": replication = Integer.parseInt(args[++i]); break;
                case "--dir": dir = args[++i]; break;
                case "--format": forceFormat = true; break;
                case "--control-port": controlPort = Integer.parseInt(args[++i]); break;
                default:
                    if (a.startsWith("-D") && a.contains("=")) {
                        int eq = a.indexOf('=');
                        conf.set(a.substring(2, eq), a.substring(eq + 1));
                    } else {
                        System.err.println("unknown argument: " + a);
                        System.exit(2);
                    }
            }
        }

        File baseDir = new File(base).getAbsoluteFile();
        baseDir.mkdirs();
        // MiniDFSCluster keeps its name dirs in <base>/name-0-1 and name-0-2
        // and the DataNode dirs in <base>/data/data1..2N.
        boolean formatted = new File(baseDir, "name-0-1/current/VERSION").isFile()
                && new File(baseDir, "data/data1/current/VERSION").isFile();
        boolean format = forceFormat || !formatted;

        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, baseDir.getPath());
        conf.setInt("dfs.replication", replication);
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setBoolean("dfs.webhdfs.enabled", true);
        // Everything on loopback. MiniDFSCluster already binds DataNodes to
        // 127.0.0.1 and registers them under that hostname, so WebHDFS
        // redirects point at http://127.0.0.1:<dn-http-port>/...
        conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
        conf.set("dfs.namenode.http-bind-host", "127.0.0.1");
        conf.set("dfs.datanode.hostname", "127.0.0.1");
        conf.setBoolean("dfs.client.use.datanode.hostname", false);
        conf.setBoolean("dfs.datanode.use.datanode.hostname", false);
        // Small machine: keep thread pools and background work modest.
        conf.setIfUnset("dfs.namenode.handler.count", "10");
        conf.setIfUnset("dfs.namenode.service.handler.count", "4");
        conf.setIfUnset("dfs.datanode.handler.count", "4");
        conf.setIfUnset("dfs.namenode.safemode.extension", "0");
        conf.setIfUnset("dfs.heartbeat.interval", "1");
        conf.setIfUnset("dfs.namenode.heartbeat.recheck-interval", "10000");
        conf.setIfUnset("dfs.namenode.replication.min", "1");
        // Let a 1-DataNode pipeline finish if a node is slow to join.
        conf.setIfUnset("dfs.client.block.write.replace-datanode-on-failure.policy", "NEVER");

        long t0 = System.nanoTime();
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf, baseDir)
                .nameNodePort(nnPort)
                .nameNodeHttpPort(httpPort)
                .numDataNodes(dataNodes)
                .format(format)
                .manageNameDfsDirs(true)
                .manageDataDfsDirs(true)
                .waitSafeMode(true)
                .build();
        cluster.waitActive();
        cluster.waitClusterUp();

        FileSystem fs = cluster.getFileSystem();
        Path p = new Path(dir);
        fs.mkdirs(p);
        fs.setPermission(p, new FsPermission((short) 0777));

        InetSocketAddress rpc = cluster.getNameNode().getNameNodeAddress();
        InetSocketAddress http = cluster.getNameNode().getHttpAddress();
        long ms = (System.nanoTime() - t0) / 1_000_000L;

        final CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("MINIDFS STOPPING");
            try {
                // false: keep the data directory so a restart reuses it.
                cluster.shutdown(false);
            } catch (Throwable t) {
                t.printStackTrace();
            }
            stop.countDown();
        }, "minidfs-shutdown"));

        if (controlPort > 0) {
            new Control(cluster, controlPort).start();
        }

        System.out.println("hadoop " + VersionInfo.getVersion()
                + " namenode=hdfs://" + rpc.getHostString() + ":" + rpc.getPort()
                + " webhdfs=http://" + http.getHostString() + ":" + http.getPort()
                + " datanodes=" + cluster.getDataNodes().size()
                + " replication=" + replication
                + " formatted=" + format
                + " base=" + baseDir
                + " startup_ms=" + ms
                + (controlPort > 0 ? " control=127.0.0.1:" + controlPort : ""));
        System.out.println("MINIDFS READY");
        System.out.flush();
        stop.await();
    }

    /**
     * The control channel: one command per line on a TCP connection to
     * 127.0.0.1, one line of JSON back for each.
     *
     *   status              {"datanodes":[{"index":0,"alive":true,"xfer_port":P},..],
     *                        "live":3,"dead":0,"under_replicated":0,
     *                        "pending_replication":0,"missing":0}
     *                       (live/dead as the NameNode sees them: a stopped
     *                       DataNode counts as live until its heartbeats are
     *                       overdue)
     *   stop-datanode I     stop DataNode I (its process threads end, its data
     *                       stays on disk), as abruptly as MiniDFSCluster allows
     *   mark-dead I         tell the NameNode that stopped DataNode I is dead now,
     *                       as it decides by itself once its heartbeats are
     *                       overdue (dfs.namenode.heartbeat.recheck-interval)
     *   restart-datanode I  start DataNode I again on its old ports and data
     *
     * I is the DataNode's index at startup (0..N-1); it stays the same across
     * stops and restarts, although MiniDFSCluster reorders its own list.
     * Errors answer {"error":"..."}.
     */
    static final class Control extends Thread {
        private final MiniDFSCluster cluster;
        private final ServerSocket server;
        private final Map<Integer, DataNode> running = new HashMap<>();
        private final Map<Integer, DataNodeProperties> stopped = new HashMap<>();
        private final Map<Integer, DataNode> stoppedNodes = new HashMap<>();

        Control(MiniDFSCluster cluster, int port) throws Exception {
            super("minidfs-control");
            setDaemon(true);
            this.cluster = cluster;
            List<DataNode> dns = cluster.getDataNodes();
            for (int i = 0; i < dns.size(); i++) {
                running.put(i, dns.get(i));
            }
            this.server = new ServerSocket(port, 16, InetAddress.getByName("127.0.0.1"));
        }

        @Override
        public void run() {
            while (true) {
                try (Socket s = server.accept();
                     BufferedReader in = new BufferedReader(
                             new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
                     PrintWriter out = new PrintWriter(s.getOutputStream(), true, StandardCharsets.UTF_8)) {
                    String line;
                    while ((line = in.readLine()) != null) {
                        out.println(answer(line.trim()));
                    }
                } catch (Exception e) {
                    // One client's broken connection must not end the channel.
                    System.err.println("minidfs control: " + e);
                }
            }
        }

        synchronized String answer(String line) {
            String[] w = line.split("\\s+");
            try {
                switch (w[0]) {
                    case "status": return status();
                    case "stop-datanode": return stop(Integer.parseInt(w[1]));
                    case "restart-datanode": return restart(Integer.parseInt(w[1]));
                    case "mark-dead": return markDead(Integer.parseInt(w[1]));
                    default: return error("unknown command: " + line);
                }
            } catch (Exception e) {
                return error(e.toString());
            }
        }

        private String stop(int i) {
            DataNode dn = running.get(i);
            if (dn == null) {
                return error("datanode " + i + " is not running");
            }
            int at = cluster.getDataNodes().indexOf(dn);
            DataNodeProperties props = cluster.stopDataNode(at);
            running.remove(i);
            stopped.put(i, props);
            stoppedNodes.put(i, dn);
            return "{\"ok\":true,\"datanode\":" + i + "}";
        }

        private String markDead(int i) throws Exception {
            DataNode dn = stoppedNodes.get(i);
            if (dn == null) {
                return error("datanode " + i + " is not stopped");
            }
            cluster.setDataNodeDead(dn.getDatanodeId());
            return "{\"ok\":true,\"datanode\":" + i + "}";
        }

        private String restart(int i) throws Exception {
            DataNodeProperties props = stopped.get(i);
            if (props == null) {
                return error("datanode " + i + " is not stopped");
            }
            // keepPort: clients and the NameNode find it where it was.
            if (!cluster.restartDataNode(props, true)) {
                return error("datanode " + i + " did not restart");
            }
            List<DataNode> dns = cluster.getDataNodes();
            running.put(i, dns.get(dns.size() - 1));
            stopped.remove(i);
            stoppedNodes.remove(i);
            return "{\"ok\":true,\"datanode\":" + i + "}";
        }

        private String status() {
            List<String> nodes = new ArrayList<>();
            int n = running.size() + stopped.size();
            for (int i = 0; i < n; i++) {
                DataNode dn = running.get(i);
                nodes.add("{\"index\":" + i + ",\"alive\":" + (dn != null)
                        + (dn != null ? ",\"xfer_port\":" + dn.getXferPort() : "") + "}");
            }
            FSNamesystem ns = cluster.getNamesystem();
            return "{\"datanodes\":[" + String.join(",", nodes) + "]"
                    + ",\"live\":" + ns.getNumLiveDataNodes()
                    + ",\"dead\":" + ns.getNumDeadDataNodes()
                    + ",\"under_replicated\":" + ns.getUnderReplicatedBlocks()
                    + ",\"pending_replication\":" + ns.getPendingReplicationBlocks()
                    + ",\"missing\":" + ns.getMissingBlocksCount() + "}";
        }

        private static String error(String message) {
            return "{\"error\":\"" + message.replace("\\", "\\\\").replace("\"", "\\\"") + "\"}";
        }
    }
}
