-- wrk script: the same V2 send the tool makes, for the loopback ceiling.
wrk.method = "POST"
wrk.body = '{"customer_id":"C00000001","customer_email":"c1@example.vn","messages":[{"text":"Chào An, bạn có 1200 điểm tại Hà Nội, hạn dùng 31/12/2026."}],"messaging_tag":"ACCOUNT_UPDATE"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
