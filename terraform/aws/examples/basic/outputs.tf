output "bootstrap_address" {
  description = "bootstrap.servers for Kafka clients."
  value       = module.floe.bootstrap_address
}

output "bucket_name" {
  description = "The segment bucket."
  value       = module.floe.bucket_name
}

output "catalog_endpoint" {
  description = "The RDS PostgreSQL catalog, host:port."
  value       = module.floe.catalog_endpoint
}
