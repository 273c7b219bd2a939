output "bootstrap_address" {
  description = "bootstrap.servers for Kafka clients."
  value       = module.floe.bootstrap_address
}

output "bucket_name" {
  description = "The segment bucket."
  value       = module.floe.bucket_name
}

output "catalog_endpoint" {
  description = "The Cloud SQL catalog's private endpoint, host:port."
  value       = module.floe.catalog_endpoint
}
