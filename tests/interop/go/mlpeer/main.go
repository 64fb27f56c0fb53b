// mlpeer: a Go memberlist node for wanfedtx interop tests (built in GOPATH mode from Debian's
// golang-github-hashicorp-memberlist-dev). It prints one JSON object per line on stdout and reads
// JSON commands, one per line, on stdin:
//
//	{"cmd":"join","addrs":["name/127.0.0.1:7946"]}   {"cmd":"members"}
//	{"cmd":"send","node":"b","data":"x","tcp":true}   {"cmd":"gossip","data":"x"}
//	{"cmd":"leave"}   {"cmd":"exit"}
//
// Extra mode: `mlpeer -lzw compress|decompress` filters stdin to stdout with Go's compress/lzw.
package main

import (
	"bufio"
	"compress/lzw"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

var outMu sync.Mutex

func emit(ev map[string]interface{}) {
	ev["t"] = time.Now().UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(ev)
	outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	outMu.Unlock()
}

func nodeInfo(event string, n *memberlist.Node) map[string]interface{} {
	return map[string]interface{}{
		"event": event, "node": n.Name, "addr": n.Addr.String(), "port": n.Port,
		"meta": string(n.Meta), "meta_hex": hex.EncodeToString(n.Meta),
		"vsn": []int{int(n.PMin), int(n.PMax), int(n.PCur), int(n.DMin), int(n.DMax), int(n.DCur)},
	}
}

type events struct{}

func (events) NotifyJoin(n *memberlist.Node)   { emit(nodeInfo("join", n)) }
func (events) NotifyLeave(n *memberlist.Node)  { emit(nodeInfo("leave", n)) }
func (events) NotifyUpdate(n *memberlist.Node) { emit(nodeInfo("update", n)) }

type bcast struct{ msg []byte }

func (b *bcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *bcast) Message() []byte                       { return b.msg }
func (b *bcast) Finished()                             {}

type delegate struct {
	meta  []byte
	state []byte
	queue *memberlist.TransmitLimitedQueue
}

func (d *delegate) NodeMeta(limit int) []byte { return d.meta }
func (d *delegate) NotifyMsg(b []byte) {
	emit(map[string]interface{}{"event": "user_msg", "data": string(b), "hex": hex.EncodeToString(b)})
}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}
func (d *delegate) LocalState(join bool) []byte { return d.state }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) > 0 {
		emit(map[string]interface{}{"event": "remote_state", "join": join, "data": string(buf)})
	}
}

func lzwMode(mode string) {
	in, err := ioutil.ReadAll(os.Stdin)
	if err != nil {
		os.Exit(2)
	}
	if mode == "compress" {
		w := lzw.NewWriter(os.Stdout, lzw.LSB, 8)
		w.Write(in)
		w.Close()
		return
	}
	r := lzw.NewReader(strings.NewReader(string(in)), lzw.LSB, 8)
	if _, err := io.Copy(os.Stdout, r); err != nil {
		fmt.Fprintln(os.Stderr, "lzw:", err)
		os.Exit(1)
	}
}

func main() {
	name := flag.String("name", "", "node name")
	bind := flag.String("bind", "127.0.0.1", "bind address")
	port := flag.Int("port", 0, "bind port (UDP+TCP)")
	join := flag.String("join", "", "comma-separated join addresses (name/host:port or host:port)")
	profile := flag.String("profile", "local", "local|lan|wan")
	meta := flag.String("meta", "", "node meta")
	state := flag.String("state", "", "push/pull user state")
	key := flag.String("key", "", "base64 AES key (enables encryption)")
	compress := flag.Bool("compress", true, "EnableCompression")
	proto := flag.Int("proto", 2, "memberlist ProtocolVersion")
	dvsn := flag.String("dvsn", "0,0,0", "delegate protocol min,max,cur")
	requireNames := flag.Bool("require-names", false, "RequireNodeNames")
	noTCPPing := flag.Bool("no-tcp-ping", false, "DisableTcpPings")
	probe := flag.Duration("probe-interval", 0, "override ProbeInterval")
	probeTimeout := flag.Duration("probe-timeout", 0, "override ProbeTimeout")
	gossipInt := flag.Duration("gossip-interval", 0, "override GossipInterval")
	suspMult := flag.Int("suspicion-mult", 0, "override SuspicionMult")
	verbose := flag.Bool("v", false, "memberlist log to stderr")
	lzwFlag := flag.String("lzw", "", "compress|decompress stdin to stdout and exit")
	flag.Parse()
	if *lzwFlag != "" {
		lzwMode(*lzwFlag)
		return
	}

	var conf *memberlist.Config
	switch *profile {
	case "lan":
		conf = memberlist.DefaultLANConfig()
	case "wan":
		conf = memberlist.DefaultWANConfig()
	default:
		conf = memberlist.DefaultLocalConfig()
	}
	conf.Name = *name
	conf.BindAddr = *bind
	conf.BindPort = *port
	conf.AdvertiseAddr = *bind
	conf.AdvertisePort = *port
	conf.EnableCompression = *compress
	conf.ProtocolVersion = uint8(*proto)
	conf.RequireNodeNames = *requireNames
	conf.DisableTcpPings = *noTCPPing
	var dmin, dmax, dcur uint8
	fmt.Sscanf(*dvsn, "%d,%d,%d", &dmin, &dmax, &dcur)
	conf.DelegateProtocolMin, conf.DelegateProtocolMax, conf.DelegateProtocolVersion = dmin, dmax, dcur
	if *probe > 0 {
		conf.ProbeInterval = *probe
	}
	if *probeTimeout > 0 {
		conf.ProbeTimeout = *probeTimeout
	}
	if *gossipInt > 0 {
		conf.GossipInterval = *gossipInt
	}
	if *suspMult > 0 {
		conf.SuspicionMult = *suspMult
	}
	if *verbose {
		conf.LogOutput = os.Stderr
	} else {
		conf.LogOutput = ioutil.Discard
	}
	if *key != "" {
		k, err := base64.StdEncoding.DecodeString(*key)
		if err != nil {
			emit(map[string]interface{}{"event": "error", "error": err.Error()})
			os.Exit(2)
		}
		conf.SecretKey = k
	}
	d := &delegate{meta: []byte(*meta), state: []byte(*state)}
	conf.Delegate = d
	conf.Events = events{}

	m, err := memberlist.Create(conf)
	if err != nil {
		emit(map[string]interface{}{"event": "error", "error": err.Error()})
		os.Exit(1)
	}
	d.queue = &memberlist.TransmitLimitedQueue{NumNodes: m.NumMembers, RetransmitMult: conf.RetransmitMult}
	emit(map[string]interface{}{"event": "ready", "node": *name, "addr": *bind, "port": m.LocalNode().Port})

	doJoin := func(addrs []string) {
		n, err := m.Join(addrs)
		ev := map[string]interface{}{"event": "joined", "contacted": n}
		if err != nil {
			ev["error"] = err.Error()
		}
		emit(ev)
	}
	if *join != "" {
		doJoin(strings.Split(*join, ","))
	}

	members := func() {
		list := []map[string]interface{}{}
		for _, n := range m.Members() {
			list = append(list, nodeInfo("member", n))
		}
		emit(map[string]interface{}{"event": "members", "members": list, "num_alive": m.NumMembers(),
			"health": m.GetHealthScore()})
	}
	leave := func() {
		err := m.Leave(2 * time.Second)
		ev := map[string]interface{}{"event": "left"}
		if err != nil {
			ev["error"] = err.Error()
		}
		emit(ev)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		leave()
		m.Shutdown()
		emit(map[string]interface{}{"event": "exit"})
		os.Exit(0)
	}()

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var c struct {
			Cmd   string   `json:"cmd"`
			Addrs []string `json:"addrs"`
			Node  string   `json:"node"`
			Data  string   `json:"data"`
			TCP   bool     `json:"tcp"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			emit(map[string]interface{}{"event": "error", "error": err.Error()})
			continue
		}
		switch c.Cmd {
		case "join":
			doJoin(c.Addrs)
		case "members":
			members()
		case "gossip":
			d.queue.QueueBroadcast(&bcast{msg: []byte(c.Data)})
			emit(map[string]interface{}{"event": "queued"})
		case "send":
			var target *memberlist.Node
			for _, n := range m.Members() {
				if n.Name == c.Node {
					target = n
				}
			}
			ev := map[string]interface{}{"event": "sent", "node": c.Node, "tcp": c.TCP}
			if target == nil {
				ev["error"] = "no such member"
			} else if c.TCP {
				if err := m.SendReliable(target, []byte(c.Data)); err != nil {
					ev["error"] = err.Error()
				}
			} else if err := m.SendBestEffort(target, []byte(c.Data)); err != nil {
				ev["error"] = err.Error()
			}
			emit(ev)
		case "leave":
			leave()
		case "exit":
			m.Shutdown()
			emit(map[string]interface{}{"event": "exit"})
			os.Exit(0)
		}
	}
	// stdin closed: keep running until a signal arrives.
	select {}
}
