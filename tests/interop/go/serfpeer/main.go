// serfpeer: a Go serf node for wanfedtx interop tests (built in GOPATH mode from Debian's
// golang-github-hashicorp-serf-dev). One JSON object per line on stdout; JSON commands on stdin:
//
//	{"cmd":"join","addrs":["a/127.0.0.1:7946"]}  {"cmd":"members"}
//	{"cmd":"event","name":"deploy","data":"v1"}   {"cmd":"query","name":"q","data":"x"}
//	{"cmd":"leave"}  {"cmd":"exit"}
//
// SIGTERM/SIGINT: graceful serf Leave, then exit. Every query is answered with "resp-from-<name>".
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io/ioutil"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

var outMu sync.Mutex

func emit(ev map[string]interface{}) {
	ev["t"] = time.Now().UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(ev)
	outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	outMu.Unlock()
}

func memberInfo(m serf.Member) map[string]interface{} {
	return map[string]interface{}{
		"node": m.Name, "addr": m.Addr.String(), "port": m.Port, "tags": m.Tags,
		"status": m.Status.String(),
		"vsn":    []int{int(m.ProtocolMin), int(m.ProtocolMax), int(m.ProtocolCur), int(m.DelegateMin), int(m.DelegateMax), int(m.DelegateCur)},
	}
}

func parseTags(s string) map[string]string {
	tags := map[string]string{}
	if s == "" {
		return tags
	}
	for _, kv := range strings.Split(s, ",") {
		p := strings.SplitN(kv, "=", 2)
		if len(p) == 2 {
			tags[p[0]] = p[1]
		} else {
			tags[p[0]] = ""
		}
	}
	return tags
}

func main() {
	name := flag.String("name", "", "node name")
	bind := flag.String("bind", "127.0.0.1", "bind address")
	port := flag.Int("port", 0, "bind port")
	join := flag.String("join", "", "comma-separated join addresses")
	profile := flag.String("profile", "local", "local|lan|wan")
	tags := flag.String("tags", "", "k=v,k=v")
	key := flag.String("key", "", "base64 AES key")
	reap := flag.Duration("reap-interval", 0, "override ReapInterval")
	reconnectTimeout := flag.Duration("reconnect-timeout", 0, "override ReconnectTimeout")
	tombstone := flag.Duration("tombstone-timeout", 0, "override TombstoneTimeout")
	verbose := flag.Bool("v", false, "logs to stderr")
	flag.Parse()

	conf := serf.DefaultConfig()
	switch *profile {
	case "lan":
		conf.MemberlistConfig = memberlist.DefaultLANConfig()
	case "wan":
		conf.MemberlistConfig = memberlist.DefaultWANConfig()
	default:
		conf.MemberlistConfig = memberlist.DefaultLocalConfig()
	}
	conf.NodeName = *name
	conf.MemberlistConfig.Name = *name
	conf.MemberlistConfig.BindAddr = *bind
	conf.MemberlistConfig.BindPort = *port
	conf.MemberlistConfig.AdvertiseAddr = *bind
	conf.MemberlistConfig.AdvertisePort = *port
	conf.Tags = parseTags(*tags)
	conf.LeavePropagateDelay = 200 * time.Millisecond
	if *reap > 0 {
		conf.ReapInterval = *reap
	}
	if *reconnectTimeout > 0 {
		conf.ReconnectTimeout = *reconnectTimeout
	}
	if *tombstone > 0 {
		conf.TombstoneTimeout = *tombstone
	}
	if *verbose {
		conf.LogOutput = os.Stderr
		conf.MemberlistConfig.LogOutput = os.Stderr
	} else {
		conf.LogOutput = ioutil.Discard
		conf.MemberlistConfig.LogOutput = ioutil.Discard
	}
	if *key != "" {
		k, err := base64.StdEncoding.DecodeString(*key)
		if err != nil {
			emit(map[string]interface{}{"event": "error", "error": err.Error()})
			os.Exit(2)
		}
		conf.MemberlistConfig.SecretKey = k
	}
	evCh := make(chan serf.Event, 1024)
	conf.EventCh = evCh

	s, err := serf.Create(conf)
	if err != nil {
		emit(map[string]interface{}{"event": "error", "error": err.Error()})
		os.Exit(1)
	}
	emit(map[string]interface{}{"event": "ready", "node": *name, "port": s.LocalMember().Port})

	go func() {
		for e := range evCh {
			switch ev := e.(type) {
			case serf.MemberEvent:
				for _, m := range ev.Members {
					info := memberInfo(m)
					info["event"] = ev.Type.String()
					emit(info)
				}
			case serf.UserEvent:
				emit(map[string]interface{}{"event": "user", "name": ev.Name, "payload": string(ev.Payload),
					"ltime": ev.LTime, "coalesce": ev.Coalesce})
			case *serf.Query:
				emit(map[string]interface{}{"event": "query", "name": ev.Name, "payload": string(ev.Payload),
					"ltime": ev.LTime})
				ev.Respond([]byte("resp-from-" + *name))
			}
		}
	}()

	doJoin := func(addrs []string) {
		n, err := s.Join(addrs, false)
		ev := map[string]interface{}{"event": "joined", "contacted": n}
		if err != nil {
			ev["error"] = err.Error()
		}
		emit(ev)
	}
	if *join != "" {
		doJoin(strings.Split(*join, ","))
	}
	leave := func() {
		err := s.Leave()
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
		s.Shutdown()
		emit(map[string]interface{}{"event": "exit"})
		os.Exit(0)
	}()

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var c struct {
			Cmd   string   `json:"cmd"`
			Addrs []string `json:"addrs"`
			Name  string   `json:"name"`
			Data  string   `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			emit(map[string]interface{}{"event": "error", "error": err.Error()})
			continue
		}
		switch c.Cmd {
		case "join":
			doJoin(c.Addrs)
		case "members":
			list := []map[string]interface{}{}
			for _, m := range s.Members() {
				list = append(list, memberInfo(m))
			}
			emit(map[string]interface{}{"event": "members", "members": list})
		case "event":
			ev := map[string]interface{}{"event": "event_sent", "name": c.Name}
			if err := s.UserEvent(c.Name, []byte(c.Data), false); err != nil {
				ev["error"] = err.Error()
			}
			emit(ev)
		case "query":
			resp, err := s.Query(c.Name, []byte(c.Data), &serf.QueryParam{RequestAck: true})
			if err != nil {
				emit(map[string]interface{}{"event": "error", "error": err.Error()})
				continue
			}
			go func(name string) {
				acks, resps := resp.AckCh(), resp.ResponseCh()
				for acks != nil || resps != nil {
					select {
					case a, ok := <-acks:
						if !ok {
							acks = nil
							continue
						}
						emit(map[string]interface{}{"event": "query_ack", "name": name, "from": a})
					case r, ok := <-resps:
						if !ok {
							resps = nil
							continue
						}
						emit(map[string]interface{}{"event": "query_response", "name": name, "from": r.From,
							"payload": string(r.Payload)})
					}
				}
				emit(map[string]interface{}{"event": "query_done", "name": name})
			}(c.Name)
		case "leave":
			leave()
		case "exit":
			s.Shutdown()
			emit(map[string]interface{}{"event": "exit"})
			os.Exit(0)
		}
	}
	select {}
}
