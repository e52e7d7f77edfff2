// A Spring Boot app: its DataSource comes from Spring Boot's own auto-configuration, bound by its
// relaxed binding from SPRING_DATASOURCE_URL, _USERNAME and _PASSWORD as the kubelet gave them.
// The app only asks the database who it is, then holds its one pooled connection open
// (application.properties: one connection, named by PGAPPNAME).
package dbbind.check;

import java.util.Map;

import org.springframework.boot.CommandLineRunner;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.annotation.Bean;
import org.springframework.jdbc.core.JdbcTemplate;

@SpringBootApplication
public class SpringCheck {
    public static void main(String[] args) {
        SpringApplication.run(SpringCheck.class, args);
    }

    @Bean
    CommandLineRunner check(JdbcTemplate jdbc) {
        return args -> {
            Map<String, Object> row = jdbc.queryForMap(
                    "select current_user::text as u, current_database()::text as d");
            System.out.println("Spring Boot connected as " + row.get("u") + " to " + row.get("d"));
            jdbc.execute("select pg_sleep(3600)");
        };
    }
}
