module github.com/wshub/wshub/cmd/wshub-bench

go 1.26.0

replace (
	github.com/wshub/wshub => ../..
	github.com/wshub/wshub/internal/browsertest => ../../internal/browsertest
	github.com/wshub/wshub/internal/redistest => ../../internal/redistest
	github.com/wshub/wshub/store/redisstore => ../../store/redisstore
)

require (
	github.com/gorilla/websocket v1.5.3
	github.com/redis/go-redis/v9 v9.23.0
	github.com/stretchr/testify v1.12.1
	github.com/wshub/wshub v0.0.0-00010101000000-000000000000
	github.com/wshub/wshub/internal/redistest v0.0.0-00010101000000-000000000000
	github.com/wshub/wshub/store/redisstore v0.0.0-00010101000000-000000000000
	golang.org/x/sys v0.48.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/time v0.16.0 // indirect
)
