module pagurus/benches/go

go 1.20
